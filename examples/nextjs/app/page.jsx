import Realtime from './realtime';

// Rendered per request: the version is the running container's APP_VERSION, not the
// value at build time.
export const dynamic = 'force-dynamic';

export default function Home() {
  const version = process.env.APP_VERSION || 'dev';
  return (
    <main>
      <h1>Athlete platform</h1>
      <p>
        Server version <code id="server-version">{version}</code>
      </p>
      <Realtime />
    </main>
  );
}
