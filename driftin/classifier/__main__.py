"""python -m driftin.classifier"""
from .cli import main

main()
