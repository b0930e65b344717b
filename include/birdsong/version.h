/* The birdsong release, one definition for the library, `birdsong` and `birdsongd`
 * (the man pages' headers carry it too). A build may override it with -DBIRDSONG_VERSION=.. */
#ifndef BIRDSONG_VERSION_H
#define BIRDSONG_VERSION_H

#ifndef BIRDSONG_VERSION
#define BIRDSONG_VERSION "0.1.0"
#endif

#endif
