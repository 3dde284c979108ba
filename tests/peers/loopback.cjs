// Preload for Node servers that listen on every interface and have no host
// option (server-everything): load with NODE_OPTIONS="--require <this file>"
// and every TCP listen binds 127.0.0.1 instead. Unix sockets, file
// descriptors and handles are left alone.
//
// The bind is synchronous (a raw TCP handle bound here, then handed to
// listen), so `server.address()` works right after `listen()` returns, as
// it does for a plain `listen(port)`.
'use strict';
const net = require('net');

const original = net.Server.prototype.listen;

function tcpPort(args) {
  const first = args[0];
  if (first === undefined || typeof first === 'function') return 0;
  if (typeof first === 'number') return first;
  if (typeof first === 'string' && /^\d+$/.test(first)) return Number(first);
  if (first && typeof first === 'object' && !first._handle && first.fd === undefined
      && first.path === undefined && first.handle === undefined) {
    return first.port === undefined ? 0 : Number(first.port);
  }
  return null;
}

net.Server.prototype.listen = function listenOnLoopback(...args) {
  const port = tcpPort(args);
  if (port === null) return original.apply(this, args);
  const callback = args.find((a) => typeof a === 'function');
  try {
    const { TCP, constants } = process.binding('tcp_wrap');
    const handle = new TCP(constants.SERVER);
    if (handle.bind('127.0.0.1', port) === 0) {
      return callback ? original.call(this, handle, callback) : original.call(this, handle);
    }
    handle.close();
  } catch (_) {
    // fall through to the host form
  }
  const options = { port, host: '127.0.0.1' };
  return callback ? original.call(this, options, callback) : original.call(this, options);
};
