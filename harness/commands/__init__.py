"""The ``harness`` subcommands, one module each: every module adds its parser
(``register``) and holds the function that parses nothing more, calls its stage and
prints. The shared pieces: the exit codes (:mod:`.exits`), the arguments several
commands take (:mod:`.arguments`) and where output goes (:mod:`.output`)."""
