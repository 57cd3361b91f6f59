"""The auditor's history of an organisation's rating (星级评定履历)."""
