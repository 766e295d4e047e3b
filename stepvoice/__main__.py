import sys

from stepvoice.assistant.cli import main

sys.exit(main())
