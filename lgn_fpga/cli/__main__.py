import sys

from lgn_fpga.cli.main import main

sys.exit(main())
