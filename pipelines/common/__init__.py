"""Modules shared by every stage; none of them imports a stage, torch or Ray at import time."""
