"""RQ jobs and the matching/allocation logic they call."""
