/* soci-nbd: auth (being written). */
#include <config.h>
