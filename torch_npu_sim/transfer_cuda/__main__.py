"""python -m torch_npu_sim.transfer_cuda --report | --json"""
import sys

from ._report import main

sys.exit(main())
