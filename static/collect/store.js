// The phone's own storage (IndexedDB): the collector's key and form choices, and every household form (drafts,
// forms waiting to be sent, forms sent — kept so that one sent back for changes can be reopened).
const DB_NAME = "mutuelle-collect";
let opened = null;

function database() {
  if (!opened) {
    opened = new Promise((resolve, reject) => {
      const request = indexedDB.open(DB_NAME, 1);
      request.onupgradeneeded = () => {
        const db = request.result;
        db.createObjectStore("settings");
        db.createObjectStore("forms", { keyPath: "client_id" });
      };
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
  }
  return opened;
}

async function run(storeName, mode, work) {
  const db = await database();
  return new Promise((resolve, reject) => {
    const tx = db.transaction(storeName, mode);
    const result = work(tx.objectStore(storeName));
    tx.oncomplete = () => resolve(result && "result" in result ? result.result : undefined);
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error);
  });
}

export function getSetting(name) { return run("settings", "readonly", (s) => s.get(name)); }
export function setSetting(name, value) { return run("settings", "readwrite", (s) => s.put(value, name)); }
export function deleteSetting(name) { return run("settings", "readwrite", (s) => s.delete(name)); }
export function getForm(clientId) { return run("forms", "readonly", (s) => s.get(clientId)); }
export function putForm(form) { return run("forms", "readwrite", (s) => s.put(form)); }
export function deleteForm(clientId) { return run("forms", "readwrite", (s) => s.delete(clientId)); }
export function allForms() { return run("forms", "readonly", (s) => s.getAll()); }
