"""Shared API plumbing: Karbor envelopes, OpenStack faults, pagination, tenancy-aware viewsets."""
