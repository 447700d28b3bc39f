"""Renderers: console (rich) and JSON."""
