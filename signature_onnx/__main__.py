"""`python -m signature_onnx`: the same command line as `signature-onnx`."""

import sys

from signature_onnx.cli import main

sys.exit(main())
