// Open MPI defines its predefined handles as macros that take the address of
// library globals. Swift cannot import such macros, so these functions return them.
#ifndef CONCORD_MPI_SHIMS_H
#define CONCORD_MPI_SHIMS_H

#include <mpi.h>

MPI_Comm concord_mpi_comm_world(void);
MPI_Datatype concord_mpi_float(void);
MPI_Datatype concord_mpi_double(void);
MPI_Datatype concord_mpi_byte(void);
MPI_Datatype concord_mpi_int64(void);
MPI_Datatype concord_mpi_uint16(void);
MPI_Op concord_mpi_sum(void);
MPI_Op concord_mpi_max(void);
MPI_Op concord_mpi_min(void);
void *concord_mpi_in_place(void);
MPI_Status *concord_mpi_status_ignore(void);
MPI_Request concord_mpi_request_null(void);
MPI_Errhandler concord_mpi_errors_return(void);

// One MPI_Allreduce of `count` floats from `send` into `receive` with MPI_SUM on
// MPI_COMM_WORLD, the plain call that benchmarks compare Concord's collectives with.
int concord_mpi_allreduce_float_sum(const float *send, float *receive, int count);

#endif
