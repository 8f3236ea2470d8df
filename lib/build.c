/* soci-nbd: build (being written). */
#include <config.h>
