// Screenshots of the bot in Microsoft 365 Agents Playground, driven by headless Chromium.
//
// What a person sees in a Teams-like client: the welcome card, `ticket help`, the intake form
// filled in, and the ticket card it answers with (issue 16.6). Needs the bot running
// (`PORT=3962 scripts/run`, with a directory listing the Playground's user `user-id-0` as a
// technician and `meganb@example.com`), the Playground started against it
// (`APPLICATION_INSIGHTS_NO_STATSBEAT=1 agentsplayground -e http://127.0.0.1:3962/api/messages
// -c msteams --disable-telemetry -p 56152`), Debian's `chromium` and npm's `playwright-core`
// (any directory: point PLAYWRIGHT_CORE at its index.mjs, or install it next to this script).
//
//   node scripts/playground-screens.mjs http://127.0.0.1:56152 /work/wt/screenshots after
//
// Writes <prefix>-1-welcome.png, -2-help.png, -3-form.png, -4-ticket.png and -5-mine.png.

const [url = "http://127.0.0.1:56152", out = ".", prefix = "playground"] = process.argv.slice(2);
const { chromium } = await import(process.env.PLAYWRIGHT_CORE ?? "playwright-core");

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
  ],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 1300 } });
const shot = async (name) => {
  await page.waitForTimeout(500); // let the card finish laying out
  await page.screenshot({ path: `${out}/${prefix}-${name}.png` });
  console.log(`${out}/${prefix}-${name}.png`);
};
const cards = () => page.locator(".ac-adaptiveCard");
const say = async (text) => {
  const box = page.locator("[role=textbox][contenteditable=true]").first();
  await box.click();
  await box.type(text);
  await box.press("Enter");
};

try {
  await page.goto(url, { waitUntil: "networkidle" });
  await page.getByText("help-desk bot").first().waitFor();
  await shot("1-welcome");

  await say("ticket help");
  await page.getByText("ticket verify HD-7").last().waitFor();
  await shot("2-help");

  const before = await cards().count();
  await say("ticket new Outlook keeps crashing");
  await page.getByRole("button", { name: "Open ticket" }).last().waitFor();
  const form = cards().nth(before);
  const fields = form.locator("input[type=text], input[type=email], input:not([type]), textarea");
  const choose = async (index, option) => {
    await fields.nth(index).click();
    await page.getByRole("option", { name: option }).first().click();
  };
  await fields.nth(0).fill("meganb@example.com");
  await fields.nth(2).fill("Error 0x80070005: [reset here](https://evil.example) **now**");
  await fields.nth(3).fill("Opening the _shared_ calendar");
  await choose(4, "Intermittent");
  await choose(6, "P2 - single user blocked");
  await choose(7, "email");
  await fields.nth(8).fill("LT-0042");
  await fields.nth(9).fill("Acme");
  await shot("3-form");

  await page.getByRole("button", { name: "Open ticket" }).last().click();
  await page.getByText(/Opened HD-\d+/).last().waitFor();
  await page.mouse.move(600, 500);
  await page.mouse.wheel(0, 10000); // the newest message, at the bottom of the chat
  await shot("4-ticket");

  await say("ticket mine");
  await page.getByText(/Your open tickets/).last().waitFor();
  await page.mouse.wheel(0, 10000);
  await shot("5-mine");
} finally {
  await browser.close();
}
