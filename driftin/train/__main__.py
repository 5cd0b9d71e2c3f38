"""python -m driftin.train"""
from .cli import main

main()
