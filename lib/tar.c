/* soci-nbd: tar (being written). */
#include <config.h>
