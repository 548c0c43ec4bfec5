"""stages/core"""
