"""What the admin reads: dossiers, list pages and report figures."""
