import './globals.css';

export const metadata = {
  title: 'Athlete platform (Next.js sample)',
  description: 'Sample app for the ops task runner',
};

export default function RootLayout({ children }) {
  return (
    <html lang="en">
      <body>{children}</body>
    </html>
  );
}
