/* PAM application interface bound by iocaged-sys. */
#include <security/pam_appl.h>
