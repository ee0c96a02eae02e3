/*
 * Compiles lib/mta's SMTP code into tamisd until lib/mta is listed in TAMIS_MODULES
 * (CMakeLists.txt: set(TAMIS_DEPS_mta tamis_core)). Then delete this file and milter_mta.c.
 */
#include "../lib/mta/smtp.c"
