"""anoncli: find faces in images and videos and anonymize them."""

__version__ = "0.1.0"
