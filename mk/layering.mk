# layering (issue 18): `make test` checks the include graph before the unit tests run: core
# includes nothing from daemon/ or trainer/, those two never include each other, and no two
# modules include each other, directly or around a loop (scripts/check-layering.py).
.PHONY: layering-check
layering-check:
	$(Q)$(PYTHON) scripts/check-layering.py

unit: layering-check
