from workbench.app.cli import main

raise SystemExit(main())
