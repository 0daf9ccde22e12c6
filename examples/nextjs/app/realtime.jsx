'use client';

// A client component: its code ships as hashed /_next/static/chunks/... files, so a page
// load exercises the static assets of the build that rendered the HTML.
import { useEffect, useState } from 'react';
import { io } from 'socket.io-client';

export default function Realtime() {
  const [state, setState] = useState({ status: 'connecting', version: null });

  useEffect(() => {
    // Same origin, default path /socket.io/: the custom server answers there.
    const socket = io({ path: '/socket.io' });
    const ask = () => socket.emit('version', (reply) => setState({ status: 'connected', version: reply.version }));
    socket.on('connect', ask);
    socket.on('disconnect', (reason) => setState((s) => ({ ...s, status: `disconnected (${reason})` })));
    return () => socket.close();
  }, []);

  return (
    <p>
      Realtime: <code id="realtime-status">{state.status}</code>
      {state.version ? (
        <>
          {' '}
          version <code id="realtime-version">{state.version}</code>
        </>
      ) : null}
    </p>
  );
}
