/* soci-nbd: ztoc commands (being written). */
#include <config.h>
