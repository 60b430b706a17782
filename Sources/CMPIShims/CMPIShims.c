#include "CMPIShims.h"

MPI_Comm concord_mpi_comm_world(void) { return MPI_COMM_WORLD; }
MPI_Datatype concord_mpi_float(void) { return MPI_FLOAT; }
MPI_Datatype concord_mpi_double(void) { return MPI_DOUBLE; }
MPI_Datatype concord_mpi_byte(void) { return MPI_BYTE; }
MPI_Datatype concord_mpi_int64(void) { return MPI_INT64_T; }
MPI_Datatype concord_mpi_uint16(void) { return MPI_UINT16_T; }
MPI_Op concord_mpi_sum(void) { return MPI_SUM; }
MPI_Op concord_mpi_max(void) { return MPI_MAX; }
MPI_Op concord_mpi_min(void) { return MPI_MIN; }
void *concord_mpi_in_place(void) { return MPI_IN_PLACE; }
MPI_Status *concord_mpi_status_ignore(void) { return MPI_STATUS_IGNORE; }
MPI_Request concord_mpi_request_null(void) { return MPI_REQUEST_NULL; }
MPI_Errhandler concord_mpi_errors_return(void) { return MPI_ERRORS_RETURN; }

int concord_mpi_allreduce_float_sum(const float *send, float *receive, int count) {
  return MPI_Allreduce(send, receive, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
}
