/* soci-nbd: layer (being written). */
#include <config.h>
