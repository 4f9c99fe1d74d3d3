"""Careline media plane: the SFU that forwards encoded media between peer sessions."""
