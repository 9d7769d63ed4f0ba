from thermotrain.cli import main

raise SystemExit(main())
