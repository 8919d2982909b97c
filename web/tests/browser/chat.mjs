// Drive the chat UI in a real browser: type a brief, answer the question with a quick-reply
// button, watch the progress bar, see a finished image; then drop the network and check the
// page reconnects and replays. Usage: node chat.mjs URL SCREENSHOT_DIR
import { chromium } from "playwright-core";

const [url, outDir] = process.argv.slice(2);
if (!url || !outDir) {
  console.error("usage: node chat.mjs URL SCREENSHOT_DIR");
  process.exit(2);
}
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const browser = await chromium.launch({ executablePath, args: ["--no-sandbox"] });
const failures = [];
const check = (ok, what) => {
  if (!ok) failures.push(what);
  console.log(`${ok ? "ok  " : "FAIL"} ${what}`);
};

try {
  // A phone-sized screen.
  const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
  const page = await context.newPage();
  page.on("console", (m) => console.log(`[page] ${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => failures.push(`page error: ${e.message}`));
  await page.goto(url);
  await page.getByText("connected", { exact: true }).waitFor({ timeout: 15000 });
  check(await page.getByLabel("Brand").isVisible(), "the brand selector is labelled and visible");
  await page.getByLabel("Brand").selectOption("solstice");

  // The brief, typed and sent with Enter (keyboard only).
  const box = page.getByLabel("Your brief or answer");
  await box.fill("something for the summer");
  await box.press("Enter");
  await page.locator(".msg.user", { hasText: "something for the summer" }).waitFor();
  const quick = page.getByRole("group", { name: "Quick replies" }).getByRole("button", { name: "a coffee cup" });
  await quick.waitFor({ timeout: 30000 });
  await page.screenshot({ path: `${outDir}/chat-question.png`, fullPage: true });
  await quick.click();
  check(await quick.isDisabled(), "the quick reply is disabled once used");

  // Progress while the image is drawn, then the finished image with its score.
  await page.locator("#progress-bar").waitFor({ state: "visible", timeout: 30000 });
  check(true, "the progress bar appears");
  const card = page.locator(".card").first();
  await card.waitFor({ timeout: 60000 });
  await page.locator(".msg.assistant", { hasText: "Here is a warm" }).waitFor({ timeout: 60000 });
  const img = card.locator("img");
  const loaded = await img.evaluate((i) => i.complete && i.naturalWidth > 0);
  check(loaded, "the image loads from /v1/artifacts");
  check(/score \d\.\d\d/.test(await card.innerText()), "the card shows the score");
  const download = card.getByRole("link", { name: "Download" });
  check((await download.getAttribute("href")).startsWith("/v1/artifacts/"), "the card links the download");
  await card.getByRole("button", { name: "Choose" }).click();
  await page.locator(".card.chosen").waitFor({ timeout: 10000 });
  check(true, "choosing a variant marks it");
  const shot = `${outDir}/chat-finished.png`;
  await page.screenshot({ path: shot, fullPage: true });

  // Network loss: the page says so, reconnects and catches up without repeating anything.
  const before = await page.locator(".msg").count();
  await context.setOffline(true);
  const offline = await page.locator("#connection.offline").waitFor({ timeout: 15000 }).then(() => true, () => false);
  check(offline, "the page shows that it is offline");
  await context.setOffline(false);
  await page.getByText("connected", { exact: true }).waitFor({ timeout: 30000 });
  check((await page.locator(".msg").count()) === before, "no message is repeated after reconnecting");

  // A reload redraws the conversation from the server's log.
  await page.reload();
  await page.getByText("connected", { exact: true }).waitFor({ timeout: 15000 });
  await page.locator(".card").first().waitFor({ timeout: 15000 });
  check((await page.locator(".msg.user").count()) >= 2, "a reload replays the conversation");
  console.log(`screenshot: ${shot}`);
} catch (e) {
  failures.push(String(e.stack || e));
} finally {
  await browser.close();
}
if (failures.length) {
  console.error(`${failures.length} failure(s):\n${failures.join("\n")}`);
  process.exit(1);
}
