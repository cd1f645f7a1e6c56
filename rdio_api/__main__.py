from rdio_api.cli import main

raise SystemExit(main())
