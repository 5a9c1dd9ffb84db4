"""Test helpers shared by every app's tests."""
