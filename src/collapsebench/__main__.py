from collapsebench.cli import main

raise SystemExit(main())
