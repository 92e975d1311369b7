/** Defaults every relay tier shares. */

/** Socket buffer a flow asks for (4 MiB, room to absorb bursts); Linux caps it at net.core.rmem_max/wmem_max. */
export const DEFAULT_SOCKET_BUFFER = 4 * 1024 * 1024;
