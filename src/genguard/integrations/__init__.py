"""Integrations with image-generation frameworks and services."""
