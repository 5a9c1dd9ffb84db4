"""Projects, memberships with roles, and API tokens."""
