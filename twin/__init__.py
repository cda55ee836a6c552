"""Krefeld digital twin."""
