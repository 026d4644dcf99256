"""The OKX v5 gateway."""
