"""stages/publish"""
