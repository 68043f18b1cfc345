"""Builders for the tiny LLaVA test fixtures (see tools/make_fixtures.py)."""
