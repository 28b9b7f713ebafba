"""Measurements of how private and how useful an anonymization is."""
