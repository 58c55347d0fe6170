"""absl entry points of the age-tf-* console scripts (thin: flags in, one library call).

A command that uses TensorFlow imports it here, before its modules do, without the runtime's
start-up noise (quiet.py); synth and prepare never import it.
"""

import sys

from age_tf.cli import quiet

_NO_TENSORFLOW = ("synth", "prepare")

if quiet.command_name(getattr(sys, "orig_argv", sys.argv)) not in (None, *_NO_TENSORFLOW):
    quiet.import_tensorflow()
