from collapsebench.launch import main

raise SystemExit(main())
