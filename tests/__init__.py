"""Tests, mirroring the code they cover."""
