"""SAFSD-GLNet research kit: multimodal emotion recognition in conversations."""
__version__ = "0.1.0"
