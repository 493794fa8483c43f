"""Bulk imports: the members' enrolment export and operators' statements, validated whole, written in bulk."""
