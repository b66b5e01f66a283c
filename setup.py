"""Build hook: setuptools reads metadata from pyproject.toml; this only wires in CFFI."""

from setuptools import setup

setup(cffi_modules=["csrc/build_native.py:ffibuilder"])
