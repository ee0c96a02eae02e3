/*
 * Compiles lib/mta's milter code into tamisd until lib/mta is listed in TAMIS_MODULES
 * (CMakeLists.txt: set(TAMIS_DEPS_mta tamis_core)). Then delete this file and smtp_mta.c.
 */
#include "../lib/mta/milter.c"
