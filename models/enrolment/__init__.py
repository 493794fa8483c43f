"""Enrolment: collectors' household enrolments, checked for duplicates, validated into households by staff."""
