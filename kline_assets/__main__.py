from kline_assets.cli import main

raise SystemExit(main())
