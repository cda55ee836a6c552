"""Scenes: named camera views of the city and offscreen rendering of its 3D Tiles."""
