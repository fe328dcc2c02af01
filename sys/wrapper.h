/* The OpenZFS userland headers iocaged-sys binds. */
#include <libzfs.h>
#include <libzfs_core.h>
#include <libnvpair.h>
